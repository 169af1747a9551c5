"""SockJS 0.3.3 served on Channels: STOMP where WebSockets are blocked."""
