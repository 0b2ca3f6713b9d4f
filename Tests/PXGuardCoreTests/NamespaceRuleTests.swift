import Testing
@testable import PXGuardCore

@Suite("R5 opt-out and M1 namespace mutation")
struct NamespaceRuleTests {
    static func namespace(_ name: String, labels: JSON?, annotations: JSON? = nil) -> JSON {
        .obj(["apiVersion": "v1", "kind": "Namespace",
              "metadata": .obj(["name": .string(name), "labels": labels, "annotations": annotations])])
    }

    static func update(_ name: String = "team-a", old: JSON?, new: JSON?, user: String = "alice") -> Review {
        Review(kind: "Namespace", operation: "UPDATE", namespace: name, name: name, user: user,
               object: namespace(name, labels: new), oldObject: namespace(name, labels: old))
    }

    @Test("R5: removing the guarded label or setting it to anything but true is denied")
    func optOutDenied() throws {
        let removed = try validate(Self.update(old: .obj([GuardNames.guardedLabel: "true"]), new: .obj(["x": "y"])).bytes)
        #expect(!removed.allowed)
        #expect(removed.rule == .optOut)
        #expect(removed.message?.hasPrefix("pxguard: optOut:") == true)
        #expect(try validate(Self.update(old: .obj([GuardNames.guardedLabel: "true"]),
                                         new: .obj([GuardNames.guardedLabel: "false"])).bytes).allowed == false)
        #expect(try validate(Self.update(old: nil, new: .obj([GuardNames.guardedLabel: ""])).bytes).allowed == false)
    }

    @Test("R5: keeping the label, unrelated label changes and exempt namespaces are allowed")
    func optOutAllowed() throws {
        let keep = Self.update(old: .obj([GuardNames.guardedLabel: "true"]), new: .obj([GuardNames.guardedLabel: "true", "a": "b"]))
        #expect(try validate(keep.bytes).allowed)
        #expect(try validate(Self.update(old: .obj(["a": "b"]), new: .obj(["a": "c"])).bytes).allowed)
        #expect(try validate(Self.update("kube-public", old: .obj([GuardNames.guardedLabel: "true"]), new: nil).bytes).allowed)
        var config = Config.default
        config.exemptGroups = ["platform-admins"]
        var r = Self.update(old: .obj([GuardNames.guardedLabel: "true"]), new: nil)
        r.groups = ["platform-admins"]
        let v = try validate(r.bytes, AdmissionPolicy(config: config))
        #expect(v.allowed)
        #expect(v.decision == .exempt)
    }

    static func created(_ object: JSON, dryRun: Bool = false) throws -> (AdmissionPolicy.Mutation, JSON) {
        let name = object["metadata"]?["name"]?.stringValue ?? "x"
        let m = try mutate(Review(kind: "Namespace", namespace: name, name: name, object: object, dryRun: dryRun).bytes)
        guard let patch = m.verdict.patch else { return (m, object) }
        return (m, try JSONPatchApplier.apply(try JSON(parsing: patch), to: object))
    }

    @Test("M1: adds label and annotation, creating absent maps")
    func createsMaps() throws {
        let (m, result) = try Self.created(Self.namespace("team-a", labels: nil))
        #expect(result["metadata"]?["labels"]?[GuardNames.guardedLabel] == "true")
        #expect(result["metadata"]?["annotations"]?[GuardNames.policiesAnnotation]
                == "block-9001-for-non-system-users,allow-api")
    }

    @Test("M1: keeps existing entries and escapes / in the pointer as ~1")
    func keepsExisting() throws {
        let object = Self.namespace("team-b", labels: .obj(["kubernetes.io/metadata.name": "team-b", "team": "b"]),
                                    annotations: .obj(["owner": "bob"]))
        let (m, result) = try Self.created(object)
        let text = String(decoding: try #require(m.verdict.patch), as: UTF8.self)
        #expect(text.contains("/metadata/labels/pxguard.io~1guarded"))
        #expect(result["metadata"]?["labels"]?["team"] == "b")
        #expect(result["metadata"]?["labels"]?["kubernetes.io/metadata.name"] == "team-b")
        #expect(result["metadata"]?["labels"]?[GuardNames.guardedLabel] == "true")
        #expect(result["metadata"]?["annotations"]?["owner"] == "bob")
        #expect(result["metadata"]?["annotations"]?[GuardNames.policiesAnnotation] != nil)
    }

    @Test("M1: a label set to false at creation is overwritten; an already-marked namespace gets no patch")
    func overwriteAndNoop() throws {
        let (_, result) = try Self.created(Self.namespace("team-c", labels: .obj([GuardNames.guardedLabel: "false"])))
        #expect(result["metadata"]?["labels"]?[GuardNames.guardedLabel] == "true")
        let marked = Self.namespace("team-d", labels: .obj([GuardNames.guardedLabel: "true"]),
                                    annotations: .obj([GuardNames.policiesAnnotation: .string(GuardNames.policiesAnnotationValue)]))
        let (m, _) = try Self.created(marked)
        #expect(m.verdict.patch == nil)
    }

    @Test("M1: exempt namespaces are not touched; a dry run gets the same patch")
    func exemptAndDryRun() throws {
        let (exempt, _) = try Self.created(Self.namespace("kube-system", labels: nil))
        #expect(exempt.verdict.patch == nil)
        let (dry, _) = try Self.created(Self.namespace("team-e", labels: nil), dryRun: true)
        #expect(dry.verdict.patch != nil)
    }

    @Test("M1: contract fixture E8 gets a patch that applies")
    func fixtureE8() throws {
        let bytes = try fixture("namespace-create-e8")
        let m = try mutate(bytes)
        let object = try JSON(parsing: bytes)["request"]?["object"]
        let result = try JSONPatchApplier.apply(try JSON(parsing: try #require(m.verdict.patch)), to: try #require(object))
        #expect(result["metadata"]?["labels"]?["team"] == "a")
        #expect(result["metadata"]?["labels"]?[GuardNames.guardedLabel] == "true")
    }

    @Test("M1: other kinds and DELETE get no patch")
    func noPatch() throws {
        #expect(try mutate(Review(object: pod(hostNetwork: true)).bytes).verdict.patch == nil)
        let del = Review(kind: "Namespace", operation: "DELETE", namespace: "team-a", name: "team-a", object: nil,
                         oldObject: Self.namespace("team-a", labels: nil))
        #expect(try mutate(del.bytes).verdict.patch == nil)
    }
}
