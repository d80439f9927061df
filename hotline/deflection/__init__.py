"""Deflection: callbacks that keep the caller's place and links sent by text message or e-mail.

Booked on the caller side (ivr), dialled on the agent side (cti): both meet here.
"""
