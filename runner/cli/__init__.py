"""The command line: click commands that parse flags, call the API and print views; no logic."""
