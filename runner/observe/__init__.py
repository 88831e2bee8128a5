"""What ran and what it cost: status, report and doctor, read-only."""
