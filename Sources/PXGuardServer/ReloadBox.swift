import Synchronization

/// The one mutable thing shared with the loops (the TLS context, the admission
/// policy), swapped whole on reload. Readers compare a generation counter (one
/// relaxed atomic load) and only take the lock when it moved. Only a `Sendable`
/// value may be shared this way.
public final class ReloadBox<Value: Sendable>: Sendable {
    private let current: Locked<Value>
    public let generation = Atomic<Int>(0)

    public init(_ value: Value) { current = Locked(value) }

    public func swap(_ value: Value) {
        current.withLock { $0 = value }
        generation.add(1, ordering: .releasing)
    }

    public var value: Value { current.withLock { $0 } }
}

/// The serving TLS context, swapped on certificate reload.
public typealias TLSContextBox = ReloadBox<TLSContext>
