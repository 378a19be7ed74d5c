import ArgumentParser

/// The `moekit` command line: one subcommand per step of the flow
/// (inspect, tokenize, logits, generate, …). Errors thrown by the library are
/// printed by ArgumentParser as `Error: <description>` with a non-zero exit.
@main
struct MoEKitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "moekit",
        abstract: "Make Mixture-of-Experts language models small enough to run where they are needed.",
        subcommands: [InspectCommand.self, TokenizeCommand.self, LogitsCommand.self, GenerateCommand.self, ImportCommand.self, ExportCommand.self,
                      ProfileCommand.self, PlotCommand.self, SlimCommand.self, PlansCommand.self, RemoveCommand.self, GarbageCollectCommand.self, EvalCommand.self, DemoCommand.self, ServeCommand.self, BenchCommand.self]
    )
}
