// Package static embeds the web app's CSS, JavaScript and images and serves them under
// content-addressed names (/static/app.3f9a1c2b7d4e.css), so browsers may cache them
// forever: a changed file gets a new name.
package static

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
)

//go:embed *.css *.js *.svg
var files embed.FS

// hashLen is how many hex digits of the SHA-256 a name carries: enough to never collide
// between two versions of one file.
const hashLen = 12

type asset struct {
	body        []byte
	hash        string
	contentType string
}

// assets is computed once from the embedded files and never changes afterwards.
var assets = mustLoad()

func mustLoad() map[string]asset {
	out := map[string]asset{}
	err := fs.WalkDir(files, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := files.ReadFile(name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		ct := mime.TypeByExtension(path.Ext(name))
		if ct == "" {
			ct = "application/octet-stream"
		}
		out[name] = asset{body: body, hash: hex.EncodeToString(sum[:])[:hashLen], contentType: ct}
		return nil
	})
	if err != nil {
		panic(fmt.Sprintf("static: load embedded files: %v", err))
	}
	return out
}

// URL returns the cache-busting path of an embedded file, e.g. URL("app.css") →
// "/static/app.3f9a1c2b7d4e.css". It panics on an unknown name: that is a programming
// error a single page load reveals.
func URL(name string) string {
	a, ok := assets[name]
	if !ok {
		panic("static: no embedded file " + strconv.Quote(name))
	}
	ext := path.Ext(name)
	return "/static/" + strings.TrimSuffix(name, ext) + "." + a.hash + ext
}

// Handler serves /static/<name>.<hash>.<ext>. A name whose hash is not the current one
// is 404, so a stale page never gets a newer file under an old name's cache lifetime.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		file := strings.TrimPrefix(r.URL.Path, "/static/")
		ext := path.Ext(file)
		stem := strings.TrimSuffix(file, ext)
		dot := strings.LastIndexByte(stem, '.')
		if dot < 0 {
			http.NotFound(w, r)
			return
		}
		a, ok := assets[stem[:dot]+ext]
		if !ok || stem[dot+1:] != a.hash {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.contentType)
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
		h.Set("Content-Length", strconv.Itoa(len(a.body)))
		if r.Method == http.MethodHead {
			return
		}
		w.Write(a.body) //nolint:errcheck // the client went away
	})
}
