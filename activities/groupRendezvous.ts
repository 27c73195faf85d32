/**
 * Member 0 of a multi-node group (pipeline/groups.ts) offers the rendezvous: the address the
 * other members reach this host by, and a TCP port free on it now. torchrun on member 0 then
 * listens there (its rendezvous store); the workflow passes both to every member. The port is
 * released before torchrun binds it; a port taken in between fails the try, and the group's
 * retry picks another.
 */
import net from 'node:net';
import os from 'node:os';
import type { Rendezvous } from '../pipeline/groups';

/** WMSS_GROUP_ADDRESS when set (a host name or an address on the cluster network), else the host name. */
export function groupAddress(env: NodeJS.ProcessEnv = process.env): string {
  return env.WMSS_GROUP_ADDRESS || os.hostname();
}

/** A port the kernel can listen on now (the OS picks one among the free ones). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export async function groupRendezvous(): Promise<Rendezvous> {
  return { address: groupAddress(), port: await freePort() };
}
