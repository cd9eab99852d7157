-- The library's catalogue.
CREATE TABLE book (
    id INTEGER PRIMARY KEY NOT NULL,
    title TEXT NOT NULL,
    author TEXT NOT NULL,
    published_year INTEGER NOT NULL,
    price REAL NOT NULL,
    isbn TEXT,
    shelf TEXT
);

CREATE INDEX book_author ON book (author);
