"""The operator console: server-rendered pages that show and operate a running Beacon stack."""
