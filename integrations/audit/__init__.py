"""The ATNA audit trail: PS3.15 A.5 messages (``message``, pure), RFC 5424 syslog framing
(``syslog``, pure), recording (``trail``, I/O) and delivery to the collector (``sender``, I/O)."""
