"""Realistic Direct Routing messages shared by the SIP tests and the parse benchmark."""

from __future__ import annotations

TEAMS_SDP = (
    b"v=0\r\n"
    b"o=- 1731234567 0 IN IP4 52.114.148.10\r\n"
    b"s=session\r\n"
    b"c=IN IP4 52.114.148.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 52300 RTP/SAVP 9 0 8 101 13\r\n"
    b"c=IN IP4 52.114.148.10\r\n"
    b"a=ice-ufrag:Xw9h\r\n"
    b"a=ice-pwd:k9vKx0f2HqQ3vW5e8AqLzR3Z\r\n"
    b"a=rtcp-mux\r\n"
    b"a=candidate:1 1 UDP 2130706431 52.114.148.10 52300 typ host\r\n"
    b"a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:QnQ4dU1oUUdGVm9aZ2dQWnl6VjBrWGF4dmRYcEtNZ3F8MjVeMzF8MToxMw==|2^31|1:1\r\n"
    b"a=label:main-audio\r\n"
    b"a=sendrecv\r\n"
    b"a=rtpmap:9 G722/8000\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=ptime:20\r\n"
)

TEAMS_INVITE = (
    b"INVITE sip:+15551230001@tenant-a.customers.example.com:5061;user=phone;transport=tls SIP/2.0\r\n"
    b"Via: SIP/2.0/TLS 52.114.148.10:5061;branch=z9hG4bK2f1c9a3e7b6d4c21;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Alex Wilber" <sip:+15551239876@sip.pstnhub.microsoft.com:5061;user=phone>;tag=8a6c1f2e0b9d4e7f\r\n'
    b"To: <sip:+15551230001@tenant-a.customers.example.com:5061;user=phone>\r\n"
    b"Call-ID: 9c4d2a1e7f3b45d8a0c6e2b1f4d7a9c3\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:api-du-b.pstnhub.microsoft.com:443;x-i=4f2d1c3b-9a8e-4b7d-a6c5-1e2f3a4b5c6d;x-c=9c4d2a1e7f3b45d8a0c6e2b1f4d7a9c3/d/8/b9e2a1c3f4d5>\r\n"
    b"Record-Route: <sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls;lr>\r\n"
    b"Allow: INVITE, ACK, OPTIONS, CANCEL, BYE, INFO, NOTIFY, PRACK, UPDATE, REFER\r\n"
    b"Supported: timer, 100rel\r\n"
    b"Session-Expires: 3600;refresher=uac\r\n"
    b"Min-SE: 90\r\n"
    b"User-Agent: Microsoft.PSTNHub.SIPProxy v.2024.11.5.1 i.USWE.5\r\n"
    b"P-Asserted-Identity: <sip:+15551239876@sip.pstnhub.microsoft.com;user=phone>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(TEAMS_SDP)).encode() + b"\r\n"
    b"\r\n" + TEAMS_SDP
)

OK_200 = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/TLS 52.114.148.10:5061;branch=z9hG4bK2f1c9a3e7b6d4c21;rport=5061;received=52.114.148.10\r\n"
    b'From: "Alex Wilber" <sip:+15551239876@sip.pstnhub.microsoft.com:5061;user=phone>;tag=8a6c1f2e0b9d4e7f\r\n'
    b"To: <sip:+15551230001@tenant-a.customers.example.com:5061;user=phone>;tag=sbc-7d3e9a\r\n"
    b"Call-ID: 9c4d2a1e7f3b45d8a0c6e2b1f4d7a9c3\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:+15551230001@tenant-a.customers.example.com:5061;transport=tls>\r\n"
    b"Record-Route: <sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls;lr>\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY, UPDATE, PRACK, INFO\r\n"
    b"Supported: timer\r\n"
    b"Session-Expires: 3600;refresher=uac\r\n"
    b"X-MS-SBC: sbcsim/Reference/0.1.0\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

OPTIONS = (
    b"OPTIONS sip:sip.pstnhub.microsoft.com:5061;transport=tls SIP/2.0\r\n"
    b"Via: SIP/2.0/TLS 198.51.100.20:5061;branch=z9hG4bK74bf9a8c1d2e;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:sbc.customers.example.com>;tag=a48s9f7e\r\n"
    b"To: <sip:sip.pstnhub.microsoft.com>\r\n"
    b"Call-ID: 4f5e6d7c8b9a@sbc.customers.example.com\r\n"
    b"CSeq: 102 OPTIONS\r\n"
    b"Contact: <sip:sbc.customers.example.com:5061;transport=tls>\r\n"
    b"X-MS-SBC: sbcsim/Reference/0.1.0\r\n"
    b"Accept: application/sdp\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)
