/// Byte-run helpers shared by the JSON reader, the HTTP parser and the logger.
public enum Bytes {
    /// True when the `count` bytes at `a` and `b` are equal; compares eight bytes
    /// at a time (member names and header names are short, so no `memcmp` call).
    @inlinable @inline(__always)
    public static func equal(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ count: Int) -> Bool {
        var k = 0
        while k + 8 <= count {
            if UnsafeRawPointer(a + k).loadUnaligned(as: UInt64.self) != UnsafeRawPointer(b + k).loadUnaligned(as: UInt64.self) {
                return false
            }
            k += 8
        }
        while k < count {
            if a[k] != b[k] { return false }
            k += 1
        }
        return true
    }
}
