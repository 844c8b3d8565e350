"""OS glue for the commands: what talks to the rest of the machine, outside the data path.

- `netconf`: interface addresses, routes, nftables and hooks via iproute2/nft,
  the way wg-quick(8) sets them (for `pywg up` and `pywg join`);
- `uapi_client`: a client for the UAPI socket of any userspace WireGuard;
- `secretfile`: private keys and state written atomically as 0600 files;
- `netns`: threads and sockets inside another network namespace (the lab's
  hosts; a TUN interface moved to another namespace).

The TUN device and the UDP socket belong to the I/O shell (`pywg.asyncio`).
"""
