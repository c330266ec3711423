package cdp;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Set;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RawLocalFileSystem;
import org.apache.hadoop.fs.permission.FsPermission;

/**
 * Hadoop's local file system (`file:`, with its checksum files) that starts no process. Without
 * Hadoop's native library, which pip's pyspark does not ship, Hadoop runs `chmod` for every file
 * and directory it creates and `readlink` for every link check (Delta's log store makes several per
 * commit): hundreds of processes a run (docs/performance.md). Here permissions are set and links
 * read with java.nio; everything else is Hadoop's own.
 */
public class LocalFileSystem extends org.apache.hadoop.fs.LocalFileSystem {
    public LocalFileSystem() {
        super(new Raw());
    }

    /** Hadoop's raw local file system with permissions and link checks through java.nio. */
    public static class Raw extends RawLocalFileSystem {
        @Override
        public void setPermission(Path path, FsPermission permission) throws IOException {
            Files.setPosixFilePermissions(pathToFile(path).toPath(), posix(permission));
        }

        @Override
        public FileStatus getFileLinkStatus(Path path) throws IOException {
            // Only a symbolic link needs Hadoop's reading of its target; any other path is its own status.
            return Files.isSymbolicLink(pathToFile(path).toPath()) ? super.getFileLinkStatus(path) : getFileStatus(path);
        }
    }

    /** `permission` as java.nio's: its user, group and other actions read as `rwx` symbols. */
    static Set<PosixFilePermission> posix(FsPermission permission) {
        return PosixFilePermissions.fromString(
            permission.getUserAction().SYMBOL + permission.getGroupAction().SYMBOL + permission.getOtherAction().SYMBOL);
    }
}
