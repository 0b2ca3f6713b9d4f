import Testing
@testable import PXGuardPlatform

@Suite("Waker: signals and monotonic timeouts")
struct WakerTests {
    @Test("a signal given before the wait is not lost")
    func signalFirst() {
        let waker = Waker()
        waker.signal()
        let start = Clock.monotonic()
        waker.wait(seconds: 30)
        #expect(Clock.monotonic().seconds - start.seconds < 30)
    }

    @Test("an unsignalled wait lasts its timeout on the monotonic clock (a deadline on another clock ends at once or never)")
    func timeout() {
        let waker = Waker()
        let start = Clock.monotonic()
        waker.wait(seconds: 0.2)
        #expect(Clock.monotonic().seconds - start.seconds >= 0.2)
    }
}
