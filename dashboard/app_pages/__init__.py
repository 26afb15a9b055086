"""Pages (registered by dashboard/app.py with st.navigation): home, neurons, trajectories, heads; unit_body is the
shared body of a unit page (stats, histogram, examples, intervals, logit effects, custom text)."""
