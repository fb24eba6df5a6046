"""The process around the code: how a command starts (`entrypoint`)."""
