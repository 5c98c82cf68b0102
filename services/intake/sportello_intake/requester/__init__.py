"""What the requester receives and sees: notices (texts, sending, order), the outbound
doors (SMTP relay, chat callback), the signed links and the status page."""
