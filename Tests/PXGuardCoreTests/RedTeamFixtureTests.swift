import Foundation
import Testing
@testable import PXGuardCore

/// The red-team review's AdmissionReviews (Fixtures/redteam), replayed through
/// `/validate` with the default config: the findings that were fixed stay fixed, and
/// the SPEC gaps it noted stay decided as documented.
@Suite("Red-team review fixtures")
struct RedTeamFixtureTests {
    static func load(_ name: String) throws -> [UInt8] {
        let url = try #require(Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "Fixtures/redteam"))
        return Array(try Data(contentsOf: url))
    }

    @Test("findings that were fixed are denied", arguments: [
        // An IPv4-mapped except under 0.0.0.0/0 removes nothing (CNIs differ).
        ("r4-v4mapped-except-removes-node-subnet", RuleID.bypassPolicies),
        ("r4-v4mapped-except-slash96", .bypassPolicies),
        // spec.loadBalancerIP on a node address (CVE-2020-8554's other half).
        ("r7-spec-gap-loadbalancerip-node-ip", .externalIPs),
        // A guarded namespace created privileged and unlabelled: /validate judges the
        // CREATE as stored (issue 23, finding 1), whatever M1 did or did not do.
        ("r5-note-namespace-create-privileged-validate-allows", .optOut),
    ])
    func denied(_ name: String, _ rule: RuleID) throws {
        let v = try validate(Self.load(name))
        #expect(!v.allowed && v.rule == rule, "\(v.message ?? "allowed")")
    }

    @Test("SPEC gaps decided as documented are allowed", arguments: [
        // Selector peers select pods, not nodes (R4 counts ipBlocks only).
        "r4-spec-gap-selector-peer-hostnetwork-pods",
        // status.loadBalancer.ingress is written by the load balancer controller (services/status).
        "r7-spec-gap-status-loadbalancer-ingress-node-ip",
    ])
    func allowed(_ name: String) throws {
        #expect(try validate(Self.load(name)).allowed)
    }
}
