#!/usr/bin/python3
"""A WebSocket echo server for the tunnel tests (Debian's python3-websockets).

Listens on 127.0.0.1:0, prints "listening PORT", echoes every message back,
and answers a plain HTTP request (no Upgrade) with 426. Runs until killed.
"""
import asyncio

import websockets


async def echo(ws, path=None):  # websockets 10 passes the path, newer ones do not
    async for message in ws:
        await ws.send(message)


async def main():
    async with websockets.serve(echo, "127.0.0.1", 0, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening {port}", flush=True)
        await asyncio.Future()


asyncio.run(main())
