import PXGuardPlatform
import Synchronization

/// The connection budget shared by all loops: a loop takes a place per accepted
/// connection and gives it back on close.
final class ConnectionBudget: Sendable {
    let limit: Int
    let open = Atomic<Int>(0)

    init(limit: Int) { self.limit = limit }

    func take() -> Bool {
        if open.wrappingAdd(1, ordering: .relaxed).newValue <= limit { return true }
        open.wrappingSubtract(1, ordering: .relaxed)
        return false
    }

    func give() { open.wrappingSubtract(1, ordering: .relaxed) }
}
