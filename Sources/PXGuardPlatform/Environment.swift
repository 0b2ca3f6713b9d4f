import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// What the process is told by its surroundings: environment variables and the host name.
public enum Environment {
    /// An environment variable, or nil when unset.
    public static func variable(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }

    /// The host name (in a pod: the pod name unless `hostname` is set).
    public static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, buffer.count)
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
