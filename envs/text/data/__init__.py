"""The text tasks' shipped data (envs/text/generate_data.py makes it); a package, so it installs."""
