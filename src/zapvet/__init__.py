"""zapvet: the WhatsApp attendant of pet shops and veterinary clinics."""

__version__ = "0.1.0"
