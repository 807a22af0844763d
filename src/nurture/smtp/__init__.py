"""SMTP adapters: the transport, the SMTP conversation, the relay process and the local mail catcher."""
