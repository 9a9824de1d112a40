"""WhatsApp-Web gateway acks (WAHA, Evolution API): /webhooks/gateway/<token> (to be written)."""
