"""The text tasks' shipped data (made by envs/text/generate_data.py); a package so it installs with its files."""
