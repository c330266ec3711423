-- Revenue per buyer industry and day (the industry of the company behind the person's email domain; 'unknown' when none).
{{ revenue_by('industry') }}
