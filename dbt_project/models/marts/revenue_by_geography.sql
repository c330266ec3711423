-- Revenue per buyer country and day (the country of the person's profile; 'unknown' when none).
{{ revenue_by('country') }}
