"""The sending engine: planning, dispatching, enrolling, throttling and the ports it needs of the outside."""
