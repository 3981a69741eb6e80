"""Beacon: a queue-based backend for chat bots on WhatsApp and other chat channels."""

__version__ = "0.1.0"
