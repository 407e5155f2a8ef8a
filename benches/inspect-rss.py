#!/usr/bin/env python3
# RSS per idle inspected connection (docs/benchmarks.md §9): N clients each CONNECT through
# socialgate to a local TLS origin, complete TLS with socialgate's leaf
# (trusting only the company CA), send one request, then stay idle.
# Bounded: N connections, then it stops by itself.
import asyncio, ssl, sys, os, time
PROXY = ("127.0.0.1", int(sys.argv[1])); N = int(sys.argv[2]); PID = int(sys.argv[3]); CA = sys.argv[4]
def rss(pid):
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS:"): return int(l.split()[1])  # KiB
async def origin_handler(r, w):
    try:
        while True:
            data = await r.readuntil(b"\r\n\r\n")
            w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"); await w.drain()
    except Exception:
        pass
async def client(ctx, keep):
    r, w = await asyncio.open_connection(*PROXY)
    w.write(b"CONNECT localhost:18443 HTTP/1.1\r\nHost: localhost:18443\r\n\r\n"); await w.drain()
    head = await r.readuntil(b"\r\n\r\n"); assert b" 200 " in head, head
    await w.start_tls(ctx, server_hostname="localhost")
    w.write(b"GET / HTTP/1.1\r\nHost: localhost:18443\r\n\r\n"); await w.drain()
    resp = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10); assert b" 200 " in resp, resp; await r.readexactly(2)
    keep.append((r, w))
async def main():
    octx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH); octx.load_cert_chain("origin.pem", "origin.key")
    srv = await asyncio.start_server(origin_handler, "127.0.0.1", 18443, ssl=octx, backlog=2048)
    ctx = ssl.create_default_context(cafile=CA)
    keep = []
    # warm: one connection mints the leaf and warms allocators
    await client(ctx, keep)
    await asyncio.sleep(1); before = rss(PID)
    for i in range(0, N, 50):
        await asyncio.gather(*(client(ctx, keep) for _ in range(min(50, N - i))))
    await asyncio.sleep(2); after = rss(PID)
    print(f"connections={len(keep)} rss_before_kib={before} rss_after_kib={after} per_conn_kib={(after-before)/N:.1f}")
    for r, w in keep: w.close()
    srv.close()
asyncio.run(main())
