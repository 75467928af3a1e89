"""The command line: commands, console output, progress, and the one override mechanism of
flags and YAML."""
