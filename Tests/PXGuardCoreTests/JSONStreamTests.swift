import Testing
@testable import PXGuardCore

/// A stream reader over `text`, delivered `slice` bytes at a time.
func streamReader(_ text: String, slice: Int) -> JSONStreamReader {
    let bytes = Array(text.utf8)
    var offset = 0
    return JSONStreamReader {
        guard offset < bytes.count else { return nil }
        defer { offset = min(bytes.count, offset + slice) }
        return bytes[offset..<min(bytes.count, offset + slice)]
    }
}

@Suite("JSON stream reader: keeps the asked-for fields, skips the rest, within a budget")
struct JSONStreamTests {
    static let namespace = #"""
    {"kind":"Namespace","apiVersion":"v1","metadata":{"name":"team-a","uid":"1f","resourceVersion":"42",
     "labels":{"kubernetes.io/metadata.name":"team-a","pxguard.io\/guarded":"true","x":"\"]}{["},
     "annotations":{"note":"a \\ \" \u00e9 \ud83d\ude00 string with } and ] inside","pxguard.io/policies":"block-9001-for-non-system-users,allow-api"},
     "managedFields":[{"manager":"kubectl","fieldsV1":{"f:metadata":{"f:labels":{".":{},"f:x":{}}}},"time":"2026-01-01T00:00:00Z"}]},
     "spec":{"finalizers":["kubernetes"]},"status":{"phase":"Active"},"n":[1,-2.5e+3,true,false,null]}
    """#

    static let paths = JSONPaths([
        ["metadata", "name"], ["metadata", "labels", "pxguard.io/guarded"], ["metadata", "annotations", "pxguard.io/policies"],
        ["status", "phase"], ["metadata", "deletionTimestamp"], ["spec"], ["n"],
    ])

    @Test("the same fields whatever the slicing: escapes in keys decoded, strings with brackets skipped, the rest never kept")
    func capturesAcrossSlices() throws {
        for slice in [1, 2, 3, 7, 64, 100_000] {
            var reader = streamReader(Self.namespace, slice: slice)
            let c = try reader.next(Self.paths, budget: 1 << 20)
            #expect(c.string(0) == "team-a")
            #expect(c.string(1) == "true")
            #expect(c.string(2) == "block-9001-for-non-system-users,allow-api")
            #expect(c.string(3) == "Active")
            #expect(c.raw[4] == nil && !c.overBudget[4])
            #expect(c.json(5) == .obj(["finalizers": ["kubernetes"]]))
            #expect(c.json(6) == JSON.array([1, .number("-2.5e+3"), true, false, .null]))
            #expect(try reader.atEnd())
        }
    }

    @Test("a field over the budget is marked (never read as absent) and does not cost the fields after it")
    func budget() throws {
        let text = #"{"spec":{"big":"\#(String(repeating: "x", count: 5000))"},"metadata":{"name":"n"}}"#
        for slice in [1, 13, 4096] {
            var reader = streamReader(text, slice: slice)
            let c = try reader.next(JSONPaths([["spec"], ["metadata", "name"]]), budget: 100)
            #expect(c.overBudget == [true, false])
            #expect(c.raw[0] == nil && c.json(0) == nil)
            #expect(c.string(1) == "n")
            #expect(c.isOverBudget)
        }
    }

    @Test("a list: elements handed on one at a time; the list's own fields kept wherever they are")
    func list() throws {
        let items = (0..<50).map { #"{"metadata":{"name":"ns-\#($0)","annotations":{"a":"\#(String(repeating: "y", count: 300))"}}}"# }
        let text = #"{"kind":"NamespaceList","items":[\#(items.joined(separator: ","))],"metadata":{"continue":"c1","resourceVersion":"9"}}"#
        var reader = streamReader(text, slice: 17)
        var names: [String] = []
        let top = try reader.list(JSONPaths([["metadata", "continue"], ["metadata", "resourceVersion"]]), arrayKey: "items",
                                  element: JSONPaths([["metadata", "name"]]), budget: 64) { names.append($0.string(0) ?? "?") }
        #expect(names == (0..<50).map { "ns-\($0)" })
        #expect(top.string(0) == "c1" && top.string(1) == "9")
        var empty = streamReader(#"{"items":[],"metadata":{}}"#, slice: 3)
        var count = 0
        _ = try empty.list(JSONPaths([]), arrayKey: "items", element: JSONPaths([]), budget: 1) { _ in count += 1 }
        #expect(count == 0)
    }

    @Test("a stream of values (a watch body) is read one value at a time")
    func values() throws {
        var reader = streamReader((0..<1000).map { #"{"type":"ADDED","object":{"metadata":{"name":"n\#($0)"}}}"# + "\n" }.joined(), slice: 5)
        var n = 0
        while try !reader.atEnd() {
            let c = try reader.next(JSONPaths([["type"], ["object", "metadata", "name"]]), budget: 100)
            #expect(c.string(1) == "n\(n)")
            n += 1
        }
        #expect(n == 1000)
    }

    @Test("malformed input is an error, never a trap", arguments: [
        #"{"a":[1,2}"#, #"{"a":"#, #"{"a" 1}"#, #"{"a":1,}"# + "x", #"{"a":"unterminated"#, "}", #"{"metadata":{"name":1"#,
        #"{"a":tru"#, #"{"\ud800":1}"#, String(repeating: "[", count: 600) + String(repeating: "]", count: 600),
        #"{"metadata":"# + String(repeating: "{\"a\":", count: 600),
    ])
    func malformed(_ text: String) {
        for slice in [1, 4, 1000] {
            var reader = streamReader(text, slice: slice)
            #expect(throws: JSONStreamError.self) {
                let c = try reader.next(JSONPaths([["metadata", "name"], ["a"]]), budget: 1 << 16)
                _ = c
                // A value accepted loosely while skipped must still be refused where it is kept.
                if c.raw[1] != nil && c.json(1) == nil { throw JSONStreamError("kept a malformed value") }
            }
        }
    }
}

@Suite("JSON stream reader: regressions found by fuzz-watch")
struct JSONStreamRegressionTests {
    @Test("a key given twice, kept then over the budget: the field is over the budget, not the first value (fuzz/crash-watch-7606fe96)")
    func duplicateKeyOverBudget() throws {
        for (text, over, value) in [
            (#"{"name":"a","name":"\#(String(repeating: "b", count: 200))"}"#, true, nil as String?),
            (#"{"name":"\#(String(repeating: "b", count: 200))","name":"a"}"#, false, "a"),
        ] {
            var reader = streamReader(text, slice: 5)
            let c = try reader.next(JSONPaths([["name"]]), budget: 64)
            #expect(c.overBudget[0] == over)
            #expect(c.string(0) == value)
            #expect(c.raw.reduce(0) { $0 + ($1?.count ?? 0) } <= 64)
        }
    }
}
