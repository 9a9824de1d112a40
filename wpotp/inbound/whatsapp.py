"""Meta WhatsApp Cloud API webhooks: /webhooks/whatsapp (to be written)."""
