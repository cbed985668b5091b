import Foundation
import KilnGraph

/// Whole-file reads for the data loaders, with the one error message every loader uses.
enum FileBytes {
    /// The bytes of the file at `path`; `KilnError.file` when it is missing or unreadable.
    static func read(_ path: String) throws -> [UInt8] {
        // Read straight into the array with POSIX calls: going through `Data` held the file
        // twice at once (tens of MB for a data set).
        let (fd, size) = try openForReading(path)
        defer { close(fd) }
        var failure: String?
        let bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            var done = 0
            while done < size {
                let n = Foundation.read(fd, buffer.baseAddress! + done, size - done)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { failure = n == 0 ? "file shrank while reading" : String(cString: strerror(errno)); break }
                done += n
            }
            count = done
        }
        if let failure { throw KilnError.file(path: path, message: "cannot read: \(failure)") }
        return bytes
    }

    /// An open descriptor of the regular file at `path` and its size; the caller closes it.
    static func openForReading(_ path: String) throws -> (fd: Int32, size: Int) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw KilnError.file(path: path, message: "no such file")
        }
        if isDirectory.boolValue { throw KilnError.file(path: path, message: "is a directory, expected a file") }
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw readError(path) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { close(fd); throw readError(path) }
        return (fd, Int(info.st_size))
    }

    /// `cannot read: <the C library's reason>` for the last failed call.
    static func readError(_ path: String) -> KilnError {
        KilnError.file(path: path, message: "cannot read: \(String(cString: strerror(errno)))")
    }
}

/// Replaces a file so that a crash leaves either the old contents or the new, never a mix.
public enum AtomicFile {
    /// Removes `.NAME.tmp-PID` files left in `directory` by writers killed mid-write (their
    /// process no longer exists), so a kill -9 leaves no stray file for long.
    static func removeStaleTemporaries(directory: String, name: String) {
        let prefix = ".\(name).tmp-"
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        for entry in entries where entry.hasPrefix(prefix) {
            guard let pid = Int32(entry.dropFirst(prefix.count)), pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH {
                unlink((directory as NSString).appendingPathComponent(entry))
            }
        }
    }

    /// Writes `bytes` to a temporary file in `path`'s directory, fsyncs it, renames it over `path`,
    /// then fsyncs the directory so the rename itself survives a power loss.
    ///
    /// Throws `KilnError.file` naming `path` when any step fails; the temporary file is removed then.
    public static func write(_ bytes: [UInt8], to path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        let name = (path as NSString).lastPathComponent
        let temporary = ((directory.isEmpty ? "." : directory) as NSString)
            .appendingPathComponent(".\(name).tmp-\(getpid())")
        func fail(_ what: String) -> KilnError {
            KilnError.file(path: path, message: "\(what) failed: \(String(cString: strerror(errno)))")
        }
        removeStaleTemporaries(directory: directory.isEmpty ? "." : directory, name: name)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw fail("creating \(temporary)") }
        var closed = false
        defer {
            if !closed { close(fd) }
        }
        do {
            try bytes.withUnsafeBytes { buffer in
                var done = 0
                while done < buffer.count {
                    let n = Foundation.write(fd, buffer.baseAddress! + done, buffer.count - done)
                    if n < 0 {
                        if errno == EINTR { continue }
                        throw fail("writing \(temporary)")
                    }
                    done += n
                }
            }
            guard fsync(fd) == 0 else { throw fail("fsync of \(temporary)") }
            closed = true
            guard close(fd) == 0 else { throw fail("closing \(temporary)") }
            guard rename(temporary, path) == 0 else { throw fail("renaming \(temporary) to \(path)") }
        } catch {
            unlink(temporary)
            throw error
        }
        // Best effort: some file systems refuse fsync on a directory; the data is already safe.
        let directoryFD = open(directory.isEmpty ? "." : directory, O_RDONLY)
        if directoryFD >= 0 {
            _ = fsync(directoryFD)
            close(directoryFD)
        }
    }
}

