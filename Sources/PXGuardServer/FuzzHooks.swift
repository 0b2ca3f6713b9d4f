/// Entry points for the fuzz targets in `fuzz/` (built outside the main
/// product): they drive internal state machines the way the event loop does.
public enum FuzzHooks {
    /// Feeds `data` to the HTTP/1.1 request parser in irregular slices, the way
    /// TCP delivers it, parsing pipelined requests until the input is used up or
    /// the parser refuses it. Returns the number of complete requests.
    @discardableResult
    public static func httpParser(_ data: UnsafeRawBufferPointer, maxBodyBytes: Int = 1 << 16) -> Int {
        var limits = HTTPLimits()
        limits.maxBodyBytes = maxBodyBytes
        var parser = HTTPRequestParser(limits: limits)
        let buffer = ByteBuffer(capacity: 64)
        var offset = 0
        var complete = 0
        var slice = 1
        while offset < data.count {
            let n = min(slice, data.count - offset)
            buffer.append(UnsafeRawBufferPointer(rebasing: data[offset..<offset + n]))
            offset += n
            slice = slice * 3 % 97 + 1
            while buffer.readable > 0 {
                do {
                    switch try parser.parse(buffer.readPointer, buffer.readable) {
                    case .needMore, .sendContinue:
                        break
                    case .complete(let c):
                        precondition(c.consumed <= buffer.readable, "consumed past the input")
                        buffer.consume(c.consumed)
                        parser.reset()
                        complete += 1
                        continue
                    }
                } catch {
                    precondition((400...505).contains(error.status), "status \(error.status) out of range")
                    return complete
                }
                break
            }
        }
        return complete
    }

    /// Feeds `data` to the API client's response reader in irregular slices, as
    /// the peer's TLS records would deliver it, reading responses until the input
    /// is used up or the reader refuses it (an error, never a trap). Small limits
    /// make the length checks reachable. Returns the number of complete responses.
    @discardableResult
    public static func httpClientResponse(_ data: UnsafeRawBufferPointer) -> Int {
        var limits = HTTPClientLimits()
        limits.maxLineBytes = 256
        limits.maxHeaders = 16
        limits.maxBodyBytes = 4096
        let input = Array(data)
        var offset = 0
        var slice = 1
        var reader = HTTPResponseReader(limits: limits) {
            guard offset < input.count else { return nil }
            let n = min(slice, input.count - offset)
            defer {
                offset += n
                slice = slice * 5 % 89 + 1
            }
            return Array(input[offset..<offset + n])
        }
        var complete = 0
        while true {
            do {
                let response = try reader.readResponse(method: complete % 3 == 2 ? "HEAD" : "GET")
                precondition(response.body.count <= limits.maxBodyBytes, "body over the limit")
                complete += 1
            } catch {
                return complete
            }
        }
    }

    /// The watch path's transport half: `data` as one streamed answer (head, then
    /// body pieces as `open`/`nextBodyPiece` hand them to the JSON stream), in
    /// irregular slices. Returns the status and a pull function for the body
    /// (nil at its end; throws where the reader refuses the bytes), or nil when
    /// the head is refused. Small line limits make the length checks reachable.
    public static func httpClientStream(_ data: UnsafeRawBufferPointer) -> (status: Int, next: () throws -> ArraySlice<UInt8>?)? {
        final class Box {
            var reader: HTTPResponseReader
            init(_ reader: HTTPResponseReader) { self.reader = reader }
        }
        var limits = HTTPClientLimits()
        limits.maxLineBytes = 256
        limits.maxHeaders = 16
        let input = Array(data)
        var offset = 0
        var slice = 1
        let box = Box(HTTPResponseReader(limits: limits) {
            guard offset < input.count else { return nil }
            let n = min(slice, input.count - offset)
            defer {
                offset += n
                slice = slice * 7 % 113 + 1
            }
            return Array(input[offset..<offset + n])
        })
        guard let head = try? box.reader.readHead(method: "GET", boundedBody: false) else { return nil }
        return (head.status, {
            let piece = try box.reader.nextBodyPiece(maxPiece: 1000)
            precondition(piece.map { $0.count <= 1000 } ?? true, "a body piece over its bound")
            return piece
        })
    }
}
