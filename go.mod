module github.com/presencehub/presencehub

go 1.26.0

require (
	github.com/golang-jwt/jwt/v5 v5.3.1
	go.uber.org/goleak v1.3.0
)
