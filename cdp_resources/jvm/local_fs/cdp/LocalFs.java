package cdp;

import java.io.IOException;
import java.net.URI;
import java.net.URISyntaxException;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.ChecksumFs;
import org.apache.hadoop.fs.DelegateToFileSystem;

/**
 * The local file system as Hadoop's FileContext sees it (Delta's log store commits through
 * FileContext), on `cdp.LocalFileSystem.Raw`: Hadoop's `LocalFs`, starting no process.
 */
public class LocalFs extends ChecksumFs {
    public LocalFs(URI uri, Configuration conf) throws IOException, URISyntaxException {
        super(new Raw(uri, conf));
    }

    /** Hadoop's `RawLocalFs` on `cdp.LocalFileSystem.Raw`. */
    static class Raw extends DelegateToFileSystem {
        Raw(URI uri, Configuration conf) throws IOException, URISyntaxException {
            super(uri, new LocalFileSystem.Raw(), conf, "file", false);
        }

        @Override
        public int getUriDefaultPort() {
            return -1;  // no port in a file: URI
        }

        @Override
        public boolean isValidName(String src) {
            return true;  // as Hadoop's RawLocalFs: the operating system judges local names
        }
    }
}
