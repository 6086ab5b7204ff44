import ArgumentParser
import CairnCore
import CairnSystem
import Foundation

/// Entry point: runs the command tree with the exit codes the spec sets:
/// 0 success, 1 failure, 2 usage error; errors as one sentence on stderr.
@main
enum CairnMain {
    static func main() async {
        let arguments = GlobalOptions.hoist(Array(CommandLine.arguments.dropFirst()))
        do {
            var command = try Cairn.parseAsRoot(arguments)
            // Chosen before any thread allocates: the archiver runs for months
            // in a small, steady working set (docs/BENCHMARKS.md, issue 11).
            if command is ArchiveCommand { MallocTuning.select(.compact) }
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch let error as CairnError {
            Output.error(error.message)
            exit(error.code == .usage ? 2 : 1)
        } catch let error as ExitCode {
            exit(error.rawValue)
        } catch {
            let code = Cairn.exitCode(for: error)
            if code == .success {
                print(Cairn.fullMessage(for: error))
                exit(0)
            }
            let message = Cairn.message(for: error)
            Output.error(message.isEmpty ? "\(error)" : ownSentence(message))
            if code == .validationFailure {
                Output.note(Cairn.usageString(for: arguments))
                exit(2)
            }
            exit(code == .failure ? 1 : (code.rawValue == 64 ? 2 : 1))
        }
    }
}

extension CairnMain {
    /// A value our own parser refused reaches the user through the argument
    /// parser as "The value 'x' is invalid for '<keyspace/shard>': <our
    /// sentence>"; our sentence alone names the value and says what to write.
    static func ownSentence(_ message: String) -> String {
        guard message.hasPrefix("The value '"), let invalid = message.range(of: "' is invalid for '"),
              let end = message.range(of: "': ", range: invalid.upperBound..<message.endIndex) else { return message }
        let sentence = message[end.upperBound...]
        return sentence.isEmpty ? message : String(sentence)
    }
}

extension Cairn {
    /// The usage of the subcommand the arguments name, for usage errors.
    static func usageString(for arguments: [String]) -> String {
        for arg in arguments where !arg.hasPrefix("-") {
            if let sub = configuration.subcommands.first(where: { $0.configuration.commandName == arg || $0.configuration.aliases.contains(arg) }) {
                return "usage: " + sub.usageString()
            }
            break
        }
        return "usage: " + usageString()
    }
}
