// A checksum database on loopback for agora's tests, built from the Go reference implementation
// (golang.org/x/mod/sumdb's Server and TestServer, as vendored in the Go toolchain).
//
// It signs with a key it generates, and knows the go.sum lines in the -hashes file (read on every
// lookup, so tests can add lines while it runs); a lookup for anything else is 404. Records are
// added to the log in the order they are first looked up, like sum.golang.org.
//
// POST /_fork switches to a second log with the same key built from -fork-hashes: a forked
// database, which clients that saw the first log must refuse. GET /_requests lists the paths
// asked so far, one a line.
//
// It prints "VKEY <verifier key>" and "URL http://127.0.0.1:PORT" on stdout, then serves until
// its standard input is closed (its parent test process is gone).
package main

import (
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb"
	"golang.org/x/mod/sumdb/note"
)

func gosum(file string) func(path, vers string) ([]byte, error) {
	return func(path, vers string) ([]byte, error) {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		var out []byte
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) == 3 && f[0] == path && (f[1] == vers || f[1] == vers+"/go.mod") {
				out = append(out, line+"\n"...)
			}
		}
		if len(out) == 0 {
			return nil, os.ErrNotExist
		}
		return out, nil
	}
}

func main() {
	name := flag.String("name", "sumdb.agora.test", "database name")
	hashes := flag.String("hashes", "", "file of go.sum lines the database knows")
	forkHashes := flag.String("fork-hashes", "", "go.sum lines of the forked log")
	flag.Parse()

	skey, vkey, err := note.GenerateKey(rand.Reader, *name)
	if err != nil {
		log.Fatal(err)
	}
	main := sumdb.NewServer(sumdb.NewTestServer(skey, gosum(*hashes)))
	fork := sumdb.NewServer(sumdb.NewTestServer(skey, gosum(*forkHashes)))

	var mu sync.Mutex
	current := main
	var requests []string
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		switch r.URL.Path {
		case "/_fork":
			current = fork
			mu.Unlock()
			return
		case "/_requests":
			list := strings.Join(requests, "\n")
			mu.Unlock()
			fmt.Fprintln(w, list)
			return
		}
		requests = append(requests, r.URL.Path)
		h := current
		mu.Unlock()
		h.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	fmt.Printf("VKEY %s\nURL http://%s\n", vkey, ln.Addr())
	os.Stdout.Sync()
	log.Fatal(http.Serve(ln, nil))
}
