import PXGuardBytes

/// A request as the handler sees it: views into the connection's buffer, valid
/// only during `handle`.
public struct HTTPRequest {
    public let method: HTTPMethod
    let target: UnsafeBufferPointer<UInt8>
    let contentTypeBytes: UnsafeBufferPointer<UInt8>
    /// The whole request head, for the rare lookups of other headers.
    let headBytes: UnsafeBufferPointer<UInt8>
    public let body: UnsafeRawBufferPointer
    /// Index of the event loop serving this request, for sharded counters.
    public let worker: Int

    /// The request path without the query string.
    public var path: String {
        let end = target.firstIndex(of: UInt8(ascii: "?")) ?? target.endIndex
        return String(decoding: UnsafeBufferPointer(rebasing: target[..<end]), as: UTF8.self)
    }

    /// True when the path (query ignored) equals `path`.
    public func pathIs(_ path: StaticString) -> Bool {
        let end = target.firstIndex(of: UInt8(ascii: "?")) ?? target.endIndex
        guard end == path.utf8CodeUnitCount else { return false }
        return Bytes.equal(target.baseAddress!, path.utf8Start, end)
    }

    /// The request target as sent: path and query string.
    var targetString: String { String(decoding: target, as: UTF8.self) }

    /// The value of the first header named `name` (case-insensitive). Scans the
    /// head, so it is for off-path use (tests, rare headers), not per request.
    public func header(_ name: String) -> String? {
        let lowered = name.lowercased()
        for line in String(decoding: headBytes, as: UTF8.self).split(separator: "\r\n").dropFirst() {
            guard let colon = line.firstIndex(of: ":"), line[..<colon].lowercased() == lowered else { continue }
            return line[line.index(after: colon)...].trimmingPrefix(" ").description
        }
        return nil
    }

    public var contentType: String? {
        contentTypeBytes.isEmpty ? nil : String(decoding: contentTypeBytes, as: UTF8.self)
    }

    /// True for `application/json`, with any parameters, in any letter case.
    public var isJSON: Bool {
        let media = contentTypeBytes.prefix { $0 != UInt8(ascii: ";") }
        let trimmed = media.reversed().drop { $0 == 0x20 || $0 == 0x09 }.reversed()
        let expected = Array("application/json".utf8)
        return trimmed.count == expected.count && zip(trimmed, expected).allSatisfy { $0 | 0x20 == $1 | 0x20 }
    }
}

/// The response the handler fills in; its body buffer is reused across requests.
public struct HTTPResponse {
    public var status = 200
    public var contentType: StaticString = "application/json"
    public var body: [UInt8] = []
    /// Extra header lines, each ending in CRLF (rare: `Allow`, `Retry-After`).
    public var extraHeaders: String = ""

    mutating func reset() {
        status = 200
        contentType = "application/json"
        body.removeAll(keepingCapacity: true)
        extraHeaders = ""
    }

    /// Replaces the body with a JSON error object carrying a one-line message.
    public mutating func error(_ status: Int, _ message: String) {
        self.status = status
        contentType = "application/json"
        body.removeAll(keepingCapacity: true)
        body.append(contentsOf: #"{"code":"#.utf8)
        body.append(contentsOf: String(status).utf8)
        body.append(contentsOf: #","message":"#.utf8)
        JSONWriter.appendString(message, to: &body)
        body.append(contentsOf: "}".utf8)
    }
}

/// What the server serves. Called on an event-loop thread; must not block.
public protocol HTTPHandler: Sendable {
    func handle(_ request: HTTPRequest, _ response: inout HTTPResponse)
}
