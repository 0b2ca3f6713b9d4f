/// What one command accepts: long options (`--name VALUE` or `--name=VALUE`),
/// flags, and positional arguments (one, or a list). Small on purpose: a general
/// argument-parsing package pulled Foundation into the binary (12 MB of file, 1.7 MB of idle RSS).
public struct CommandSpec: Sendable {
    /// One option, or a flag when `value` is nil.
    public struct Option: Sendable {
        public let name: String
        public let short: Character?
        public let value: String?
        public let repeatable: Bool
        public let help: String

        public init(_ name: String, short: Character? = nil, value: String? = "VALUE", repeatable: Bool = false, help: String) {
            self.name = name
            self.short = short
            self.value = value
            self.repeatable = repeatable
            self.help = help
        }

        /// A flag: present or absent, no value.
        public static func flag(_ name: String, help: String) -> Option { Option(name, value: nil, help: help) }
    }

    public let name: String
    public let abstract: String
    public let options: [Option]
    /// The positional argument's placeholder and help, when the command takes one.
    public let positional: (name: String, help: String)?
    /// True when the positional argument may be given several times.
    public let positionalRepeats: Bool

    public init(_ name: String, abstract: String, options: [Option], positional: (name: String, help: String)? = nil,
                positionalRepeats: Bool = false) {
        self.name = name
        self.abstract = abstract
        self.options = options
        self.positional = positional
        self.positionalRepeats = positionalRepeats
    }

    /// The `--help` text: usage line, abstract, one line per option.
    public var help: String {
        var usage = "usage: pxguard \(name)"
        for option in options {
            let flag = option.short.map { "-\($0)" } ?? "--\(option.name)"
            usage += " [\(flag)\(option.value.map { " \($0)" } ?? "")]\(option.repeatable ? "..." : "")"
        }
        if let positional { usage += " [\(positional.name)]\(positionalRepeats ? "..." : "")" }
        var text = usage + "\n\n" + abstract + "\n\noptions:\n"
        var rows = options.map { option in
            ((option.short.map { "-\($0), " } ?? "") + "--\(option.name)" + (option.value.map { " \($0)" } ?? ""), option.help)
        }
        if let positional { rows.insert((positional.name, positional.help), at: 0) }
        rows.append(("-h, --help", "Show this help."))
        let width = rows.map(\.0.count).max() ?? 0
        for (left, right) in rows {
            text += "  " + left + String(repeating: " ", count: width - left.count + 2) + right + "\n"
        }
        return text
    }

    /// Parses `arguments` (after the command name). Throws a one-line
    /// `CommandError` (exit 2) for anything it does not accept.
    public func parse(_ arguments: [String]) throws(CommandError) -> ParsedArguments {
        var parsed = ParsedArguments()
        var index = 0
        var onlyPositionals = false
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            if onlyPositionals || argument == "-" || !argument.hasPrefix("-") {
                guard positional != nil, parsed.positionals.isEmpty || positionalRepeats else {
                    throw usageError("unexpected argument \"\(argument)\"")
                }
                parsed.positionals.append(argument)
                continue
            }
            if argument == "--" {
                onlyPositionals = true
                continue
            }
            if argument == "-h" || argument == "--help" {
                parsed.helpRequested = true
                continue
            }
            var name = Substring(argument.drop { $0 == "-" })
            var inline: String?
            if let equals = name.firstIndex(of: "=") {
                inline = String(name[name.index(after: equals)...])
                name = name[..<equals]
            }
            let isShort = !argument.hasPrefix("--")
            guard let option = options.first(where: { isShort ? ($0.short.map { String($0) } == String(name)) : $0.name == name })
            else { throw usageError("unknown option \(argument.split(separator: "=")[0])") }
            guard let placeholder = option.value else {
                if inline != nil { throw usageError("--\(option.name) takes no value") }
                parsed.values[option.name, default: []].append("")
                continue
            }
            let value: String
            if let inline {
                value = inline
            } else {
                guard index < arguments.count else { throw usageError("--\(option.name) needs a value (\(placeholder))") }
                value = arguments[index]
                index += 1
            }
            if !option.repeatable, parsed.values[option.name] != nil {
                throw usageError("--\(option.name) given more than once")
            }
            parsed.values[option.name, default: []].append(value)
        }
        return parsed
    }

    func usageError(_ message: String) -> CommandError {
        CommandError("\(name): \(message) (see pxguard \(name) --help)")
    }
}

/// The result of `CommandSpec.parse`: option values by long name, positionals.
public struct ParsedArguments: Sendable {
    var values: [String: [String]] = [:]
    public var positionals: [String] = []
    public var helpRequested = false

    public func string(_ name: String) -> String? { values[name]?.last }
    public func strings(_ name: String) -> [String] { values[name] ?? [] }
    public func flag(_ name: String) -> Bool { values[name] != nil }

    /// A numeric option, with the default when absent and a one-line error when not a number.
    public func number<N: LosslessStringConvertible>(_ name: String, default value: N) throws(CommandError) -> N {
        guard let text = string(name) else { return value }
        guard let number = N(text) else { throw CommandError("--\(name): expected a number, got \"\(text)\"") }
        return number
    }
}
