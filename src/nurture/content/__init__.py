"""What marketers write: sequence files, selection rules, personas, and the checks on a content version."""
