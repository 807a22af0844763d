"""The shared vocabulary of the core: sequences, steps, profiles, people, reasons and content problems."""
