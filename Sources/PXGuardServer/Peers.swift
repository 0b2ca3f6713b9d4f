import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// A client's address (IPv4 as an IPv4-mapped IPv6 address), the key of its share.
struct PeerAddress: Hashable {
    var high: UInt64
    var low: UInt64

    init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// An IPv4 address, as `a.b.c.d` reads (for tests and logs).
    init(ipv4 a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        high = 0
        low = 0xFFFF_0000_0000 | UInt64(a) << 24 | UInt64(b) << 16 | UInt64(c) << 8 | UInt64(d)
    }

    /// The address in a `sockaddr_storage` filled by accept.
    init(_ storage: sockaddr_storage) {
        var storage = storage
        switch Int32(storage.ss_family) {
        case AF_INET:
            let v4 = withUnsafeBytes(of: &storage) { $0.load(as: sockaddr_in.self) }
            let b = UInt32(bigEndian: v4.sin_addr.s_addr)
            self.init(high: 0, low: 0xFFFF_0000_0000 | UInt64(b))
        case AF_INET6:
            let v6 = withUnsafeBytes(of: &storage) { $0.load(as: sockaddr_in6.self) }
            var bytes = v6.sin6_addr
            let (h, l) = withUnsafeBytes(of: &bytes) { raw in
                (raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self).bigEndian,
                 raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self).bigEndian)
            }
            self.init(high: h, low: l)
        default:
            self.init(high: 0, low: 0)
        }
    }
}

/// One client address's connections on a loop. The per-peer share and the choice of
/// whom to shed when the budget is full work on these.
final class Peer {
    let address: PeerAddress
    var connections: [Connection] = []
    /// Where the next shedding sample starts.
    var cursor = 0

    init(address: PeerAddress) { self.address = address }

    var count: Int { connections.count }
}

/// The loop's connections grouped by client address: each address may hold at most
/// `share` of them, and when the budget across loops is full, room is made by the
/// address holding the most (max-min fairness), never by one holding fewer than the
/// newcomer's would: a few API-server connections always get in, whatever one client
/// opens. Touched only by the loop's thread.
struct PeerTable {
    private(set) var peers: [PeerAddress: Peer] = [:]

    /// The peer for `address`, created when new.
    mutating func peer(_ address: PeerAddress) -> Peer {
        if let p = peers[address] { return p }
        let p = Peer(address: address)
        peers[address] = p
        return p
    }

    mutating func add(_ c: Connection, to peer: Peer) {
        c.peer = peer
        c.peerSlot = peer.connections.count
        peer.connections.append(c)
    }

    mutating func remove(_ c: Connection) {
        guard let peer = c.peer else { return }
        c.peer = nil
        let last = peer.connections.removeLast()
        if last !== c {
            peer.connections[c.peerSlot] = last
            last.peerSlot = c.peerSlot
        }
        if peer.connections.isEmpty { peers[peer.address] = nil }
    }

    /// The peer holding the most connections (O(peers): asked only when the budget is full).
    var heaviest: Peer? {
        var found: Peer?
        for p in peers.values where found == nil || p.count > found!.count { found = p }
        return found
    }

    /// Connections one shedding decision looks at, at most: a peer holding thousands
    /// is sampled from a rotating cursor (as approximated LRU does), so an accept at a
    /// full budget costs a bounded scan, not one over everything the peer holds.
    static let sample = 64

    /// The connection of `peer` to shed: among a sample, its longest-idle connection
    /// (holding no request), else, up to `maxTier` (see `ConnectionMachine.sheddingRank`),
    /// the one reading a request for longest; never one whose answer is under way.
    /// When the sample holds none, a few more samples are tried before giving up.
    static func victim(in peer: Peer, now: UInt64, maxTier: Int = 1) -> Connection? {
        let total = peer.connections.count
        guard total > 0 else { return nil }
        var best: Connection?
        var bestRank: (tier: Int, since: UInt64) = (Int.max, UInt64.max)
        var looked = 0
        while looked < total && (best == nil ? looked < 4 * sample : looked < sample) {
            let c = peer.connections[(peer.cursor + looked) % total]
            looked += 1
            guard let rank = c.sheddingRank(now: now, fresh: maxTier >= 2), rank.tier <= maxTier else { continue }
            if rank.tier < bestRank.tier || (rank.tier == bestRank.tier && rank.since < bestRank.since) {
                best = c
                bestRank = rank
            }
        }
        peer.cursor = (peer.cursor + looked) % total
        return best
    }
}
