"""The plan: built from the row pass, frozen as data, saved and loaded; reads remote state only."""
