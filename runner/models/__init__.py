"""The model catalogue as data: which models exist, their families, rules and facts; pure."""
