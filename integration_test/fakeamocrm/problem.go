package fakeamocrm

import (
	"encoding/json"
	"net/http"
)

// problemType is the "type" amoCRM puts in its OAuth problem+json answers.
const problemType = "https://developers.amocrm.ru/v3/errors/OAuthProblemJson"

// problem is amoCRM's error body.
type problem struct {
	Hint   string `json:"hint,omitempty"`
	Title  string `json:"title"`
	Type   string `json:"type"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

// writeProblem answers status with an application/problem+json body.
func writeProblem(w http.ResponseWriter, status int, title, hint, detail string) {
	if title == "" {
		title = http.StatusText(status)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(problem{Hint: hint, Title: title, Type: problemType, Status: status, Detail: detail})
}

// writeJSON answers status with v encoded as JSON of the given content type.
func writeJSON(w http.ResponseWriter, status int, contentType string, v any) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
