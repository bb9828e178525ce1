module gort.bench/gohttp

go 1.19
