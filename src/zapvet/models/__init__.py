"""SQLModel tables, one module per entity family; importing this registers them all."""

from zapvet.models.ai import AIInteraction
from zapvet.models.appointment import OCCUPYING_STATUSES, UPCOMING_STATUSES, Appointment
from zapvet.models.aurora import AuditLog, AuroraPendingAction, AuroraProactiveMessage
from zapvet.models.catalog import Resource, ResourceService, Service
from zapvet.models.contact import Contact, ContactIdentity, Pet
from zapvet.models.conversation import (
    Conversation,
    Message,
    blocked_marking,
    outgoing_message,
    pending_and_recent,
    pending_messages,
)
from zapvet.models.organization import AISettings, Organization
from zapvet.models.schedule import WEEKDAYS, BusinessHours, CalendarFeed, Closure
from zapvet.models.webhook import WebhookDelivery, WebhookEndpoint, WebhookEvent
from zapvet.models.whatsapp import (
    AuroraOwnerNumber,
    InstanceConnection,
    WhatsAppInstance,
    WhatsAppTemplate,
)

__all__ = [
    "OCCUPYING_STATUSES",
    "UPCOMING_STATUSES",
    "WEEKDAYS",
    "AIInteraction",
    "AISettings",
    "AuditLog",
    "Appointment",
    "AuroraOwnerNumber",
    "AuroraPendingAction",
    "AuroraProactiveMessage",
    "CalendarFeed",
    "BusinessHours",
    "Closure",
    "Contact",
    "ContactIdentity",
    "Conversation",
    "InstanceConnection",
    "Message",
    "Organization",
    "Pet",
    "Resource",
    "ResourceService",
    "Service",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
    "WhatsAppInstance",
    "WhatsAppTemplate",
    "blocked_marking",
    "outgoing_message",
    "pending_and_recent",
    "pending_messages",
]
