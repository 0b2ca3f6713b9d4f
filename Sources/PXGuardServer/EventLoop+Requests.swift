import PXGuardBytes
import PXGuardPlatform
import Synchronization

/// The HTTP side of the loop: parsing requests out of a connection's input,
/// calling the handler, and writing answers into its output.
extension EventLoop {
    /// Answers 503 to a request whose body no longer fits in the loop's budget.
    func refuseOverBudget(_ c: Connection) -> Step {
        stats.protocolErrors.add(1, ordering: .relaxed)
        logger.warn("request buffers full; refusing a large request", [("bufferedBytes", .integer(bufferedBytes))])
        response.reset()
        response.error(503, "server busy: request buffers are full; retry")
        response.extraHeaders = "Retry-After: 1\r\n"
        writeResponse(c, keepAlive: false)
        return c.advance { $0.refused() }
    }

    /// Parses the next request in the input buffer and answers it when complete.
    func process(_ c: Connection, _ now: UInt64) -> Step {
        guard let input = c.input, input.readable > 0 else {
            let b = c.buffers
            return c.advance { $0.needMore(b, now: now) }
        }
        let outcome: HTTPRequestParser.Outcome
        do {
            outcome = try c.parse(input)
        } catch {
            stats.protocolErrors.add(1, ordering: .relaxed)
            response.reset()
            response.error(error.status, error.message)
            writeResponse(c, keepAlive: false)
            return c.advance { $0.refused() }
        }
        switch outcome {
        case .needMore:
            if let total = c.expectedBytes, total > input.capacity - input.readIndex {
                // Size the buffer for this request once its length is known: a
                // doubling buffer would hold up to twice the body.
                if bufferedBytes - input.capacity + total > configuration.limits.maxBufferedBytesPerWorker {
                    return refuseOverBudget(c)
                }
                let exact = ByteBuffer(capacity: total)
                exact.append(UnsafeRawBufferPointer(start: input.readPointer, count: input.readable))
                bufferedBytes += exact.capacity - input.capacity
                c.input = exact
                inputPool.give(input)
            }
            let b = c.buffers
            return c.advance { $0.needMore(b, now: now) }
        case .sendContinue:
            output(c).append("HTTP/1.1 100 Continue\r\n\r\n")
            return c.advance { $0.continueQueued() }
        case .complete(let complete):
            let base = UnsafePointer(input.readPointer)
            let head = complete.head
            let body: UnsafeRawBufferPointer
            if complete.bodyIsChunked {
                let chunked = c.chunkBody
                body = UnsafeRawBufferPointer(start: chunked.readPointer, count: chunked.readable)
            } else {
                body = UnsafeRawBufferPointer(start: base + head.headLength, count: head.contentLength ?? 0)
            }
            let request = HTTPRequest(
                method: head.method,
                target: UnsafeBufferPointer(start: base + head.targetStart, count: head.targetEnd - head.targetStart),
                contentTypeBytes: UnsafeBufferPointer(start: base + head.contentTypeStart,
                                                      count: head.contentTypeEnd - head.contentTypeStart),
                headBytes: UnsafeBufferPointer(start: base, count: head.headLength),
                body: body, worker: index)
            response.reset()
            handler.handle(request, &response)
            let keepAlive = c.keepAlive(requested: head.keepAlive, draining: drainDeadline != nil)
            input.consume(complete.consumed)
            if input.readable == 0 && input.capacity > 64 * 1024 {
                // Give back what a large body needed; idle connections stay small.
                giveInput(c, input)
            }
            writeResponse(c, keepAlive: keepAlive, head: head.method == .head)
            let b = c.buffers
            return c.advance { $0.answered(keepAlive: keepAlive, b, now: now) }
        }
    }

    func output(_ c: Connection) -> ByteBuffer {
        if let output = c.output { return output }
        let output = outputPool.take()
        c.output = output
        return output
    }

    static let reasons: [Int: StaticString] = [
        200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
        408: "Request Timeout", 413: "Content Too Large", 414: "URI Too Long", 415: "Unsupported Media Type",
        431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
        503: "Service Unavailable", 505: "HTTP Version Not Supported",
    ]

    func writeResponse(_ c: Connection, keepAlive: Bool, head: Bool = false) {
        let out = output(c)
        out.append("HTTP/1.1 ")
        out.append(decimal: response.status)
        out.append(" ")
        out.append(Self.reasons[response.status] ?? "Unknown")
        out.append("\r\nContent-Type: ")
        out.append(response.contentType)
        out.append("\r\nContent-Length: ")
        out.append(decimal: response.body.count)
        out.append("\r\n")
        if !response.extraHeaders.isEmpty {
            var extra = response.extraHeaders
            extra.withUTF8 { out.append(UnsafeRawBufferPointer($0)) }
        }
        out.append(keepAlive ? "\r\n" : "Connection: close\r\n\r\n")
        if !head { out.append(response.body) }
    }
}
