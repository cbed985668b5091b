/// The umbrella module: `import Kiln` brings the graph DSL, the compiler passes,
/// the runtime and the model zoo.
@_exported import KilnGraph
@_exported import KilnPasses
@_exported import KilnRuntime
@_exported import KilnZoo
@_exported import KilnDistributed
