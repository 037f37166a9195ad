"""The wire contract: generated betterproto2 messages and the numba batch codec of PacketInfo."""
