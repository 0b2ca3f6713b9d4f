import Testing
import PXGuardPlatform
@testable import PXGuardService

@Suite("Command-line arguments")
struct ArgumentsTests {
    let spec = CommandSpec("check", abstract: "test", options: [
        .init("config", value: "FILE", help: "c"),
        .init("file", short: "f", value: "FILE", repeatable: true, help: "f"),
        .flag("mutate", help: "m"),
    ], positional: ("WHAT", "w"))

    @Test("long, inline, short and repeated options, a flag, a positional and '-' as a value")
    func accepted() throws {
        let parsed = try spec.parse(["--config=a.yaml", "-f", "x.yaml", "--file", "-", "--mutate", "all"])
        #expect(parsed.string("config") == "a.yaml")
        #expect(parsed.strings("file") == ["x.yaml", "-"])
        #expect(parsed.flag("mutate"))
        #expect(parsed.positionals == ["all"])
        #expect(!parsed.helpRequested)
        #expect(try spec.parse(["--", "--odd-name"]).positionals == ["--odd-name"])
        #expect(try spec.parse(["-h"]).helpRequested)
    }

    @Test("anything not declared is a one-line usage error naming the command", arguments: [
        (["--bogus"], "check: unknown option --bogus (see pxguard check --help)"),
        (["--config"], "check: --config needs a value (FILE) (see pxguard check --help)"),
        (["--config", "a", "--config", "b"], "check: --config given more than once (see pxguard check --help)"),
        (["--mutate=yes"], "check: --mutate takes no value (see pxguard check --help)"),
        (["one", "two"], "check: unexpected argument \"two\" (see pxguard check --help)"),
        (["--bogus=1"], "check: unknown option --bogus (see pxguard check --help)"),
    ])
    func refused(_ arguments: [String], _ message: String) {
        #expect { try spec.parse(arguments) } throws: { ($0 as? CommandError)?.description == message }
    }

    @Test("a repeating positional takes every remaining argument (check -f a.yaml b.yaml)")
    func repeatingPositional() throws {
        let check = CommandSpec("check", abstract: "", options: [.init("file", short: "f", repeatable: true, help: "")],
                                positional: ("FILE", ""), positionalRepeats: true)
        let parsed = try check.parse(["-f", "a.yaml", "b.yaml", "c.yaml", "-f", "d.yaml"])
        #expect(parsed.strings("file") == ["a.yaml", "d.yaml"])
        #expect(parsed.positionals == ["b.yaml", "c.yaml"])
        #expect(check.help.hasPrefix("usage: pxguard check [-f VALUE]... [FILE]..."))
    }

    @Test("numbers are checked; the default applies when the option is absent")
    func numbers() throws {
        let days = CommandSpec("certs", abstract: "", options: [.init("days", help: "")])
        #expect(try days.parse([]).number("days", default: 365) == 365)
        #expect(try days.parse(["--days", "30"]).number("days", default: 365) == 30)
        #expect(throws: CommandError.self) { try days.parse(["--days", "soon"]).number("days", default: 365) }
    }

    @Test("help lists every option with its placeholder")
    func help() {
        let text = spec.help
        #expect(text.hasPrefix("usage: pxguard check [--config FILE] [-f FILE]... [--mutate] [WHAT]\n"))
        #expect(text.contains("  -f, --file FILE"))
        #expect(text.contains("  -h, --help"))
    }
}
